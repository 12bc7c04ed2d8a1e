"""The intake service: storefront after-sales requests become cases."""
