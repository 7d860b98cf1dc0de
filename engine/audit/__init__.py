"""The human audit of the Reviewer: auditors, stratified sampling and statistics."""
