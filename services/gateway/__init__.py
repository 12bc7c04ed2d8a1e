"""The hub side of HTTP couriers: API clients and the webhook that receives their pushes."""
