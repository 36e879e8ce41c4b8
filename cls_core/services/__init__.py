"""Domain rules: what a create, update, delete or status report means, as guarded Redis writes."""
