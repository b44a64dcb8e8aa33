"""What several test modules share: the test layers, forged tokens, fixture helpers."""
