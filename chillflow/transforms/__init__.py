"""Pure DataFrame -> DataFrame transforms: no reads, writes, counts or logging."""
