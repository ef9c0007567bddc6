"""Account recovery and email ownership: password reset by email, verification links for a new
account's address and for a new address, which takes effect only once verified."""
