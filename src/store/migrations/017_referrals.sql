-- The member who referred this one, named at enrolment (NULL: nobody); it travels in the
-- member's record and never changes (the referrer's record may reach a till after it).
ALTER TABLE members ADD COLUMN referred_by BLOB;

-- Referral bonuses by member, to find one two tills gave apart or one over a referrer's cap.
CREATE INDEX ledger_referrals ON ledger (member_id, reward_id) WHERE kind = 'referral_bonus';
