"""A worker's background life: the runner, its scheduler lanes, followers and gauges."""
