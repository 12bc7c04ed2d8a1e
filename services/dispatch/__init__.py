"""The dispatch service: couriers chosen, pickup orders sent, tracking normalised."""
