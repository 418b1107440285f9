-- Business rules of `shopify_usage_daily`, applied to `export` (every line
-- of the day's file with the right number of fields, each column read by
-- its kind; `_line`, `_reject` and `_raw` must be passed through).
--
-- * A shop on the internal `test` plan is not a customer: filtered.
-- * revenue_per_search: revenue over searches, null when there were none.
SELECT
  *,
  CAST(CASE WHEN searches > 0 THEN revenue / CAST(searches AS DECIMAL(20, 0)) END AS DECIMAL(12, 4))
    AS revenue_per_search
FROM export
WHERE plan IS NULL OR plan <> 'test'
