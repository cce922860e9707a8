-- The manager's tier list sorts and pages members within one tier.
CREATE INDEX member_state_tier_balance ON member_state (tier, balance);
CREATE INDEX member_state_tier_activity ON member_state (tier, last_activity_at);
CREATE INDEX members_name ON members (name);
