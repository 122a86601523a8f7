"""Where state lives: the tables, the engine and its transactions, migrations and shared queries."""
