"""Reports of a flow run, of a DSE run, and their comparison."""
