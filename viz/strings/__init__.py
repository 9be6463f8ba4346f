"""Parts of the dashboard's string catalogue, one module per area of the product, each a
``STRINGS`` mapping of key -> (Simplified Chinese, English). :mod:`viz.i18n` merges them with its own
table and refuses a key defined twice. Pure."""
