"""Work done at times of day: digest runs and the owners' daily report."""
