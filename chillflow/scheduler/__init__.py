"""The batch scheduler: its schedules, planner, child processes, loop and run history."""
