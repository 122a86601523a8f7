"""What the admin's commands do, one transaction per operation; the CLI is only glue over these."""
