-- Business rules of `shopify_products`, applied to `export` (every record
-- of the day's file, each column read by its kind, a group's fill_down
-- columns already filled from its first row; `_line`, `_reject` and `_raw`
-- must be passed through).
--
-- * variant_key: the variant's identity within a day, its product's handle
--   and its SKU (a SKU alone may repeat across products).
SELECT
  *,
  handle || '/' || variant_sku AS variant_key
FROM export
