-- The sale without a member a guest's recommend answer followed (NULL for a member's answer,
-- or a guest who was asked without one).
ALTER TABLE nps_answers ADD COLUMN guest_sale BLOB REFERENCES guest_sales (id);
