"""Billing: rates, costs so far, prices, billing projects and limits, forecasts."""
