"""Partner simulators: real servers that behave like couriers, with fault knobs."""
