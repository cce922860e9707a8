-- Lookups that ran per pull or per push read whole tables; on a store of a million members
-- each cost as much as the store is big. Each now finds its rows through an index.

-- Partner lines by member, to find one recorded twice (after every pull), as the badge and
-- referral indexes do for theirs.
CREATE INDEX ledger_partner_lines ON ledger (member_id, reward_id, note) WHERE kind = 'partner_earn';

-- A member's name tokens, replaced whenever a pulled record changes the member.
CREATE INDEX member_name_tokens_member ON member_name_tokens (member_id);

-- A member's retired cards, read for every member record pushed or pulled.
CREATE INDEX retired_cards_member ON retired_cards (member_id, retired_at, card);
