"""Stage orchestration: wire readers, transforms and writers together for one run."""
