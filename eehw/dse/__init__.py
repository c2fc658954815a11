"""The co-design search: exit configurations, characterisation, composition, search, validation."""
