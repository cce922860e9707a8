-- The sale without a member a guest's recommend answer followed (issue 13: an answer is stored
-- with the member or the guest sale).
ALTER TABLE recommend_answers ADD COLUMN guest_sale BLOB;
