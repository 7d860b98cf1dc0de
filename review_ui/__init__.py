"""review_ui."""
