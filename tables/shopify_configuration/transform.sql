-- Business rules of `shopify_configuration`, applied to `export`: every line
-- of the day's file that has the right number of fields, in file order, with
-- each column already read by its kind (table.toml) and the bookkeeping
-- columns `_line`, `_reject` and `_raw`, which must be passed through.
--
-- * A shop without an application is not a customer yet: filtered, not rejected.
-- * has_specific_prefix: the shop changed the default index prefix
--   (a missing prefix counts as not the default).
SELECT
  *,
  index_prefix IS DISTINCT FROM 'shopify_' AS has_specific_prefix
FROM export
WHERE application_id IS NOT NULL
  AND trim(application_id) <> ''
