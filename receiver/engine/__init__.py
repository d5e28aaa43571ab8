"""Running a run: admission through every guard, the steps, breaker, budgets, retries."""
