"""Alert rules on training metrics: rules, their live evaluation and backtest (ADR 0018)."""
