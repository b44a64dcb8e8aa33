"""The system service. Built so far: platform health (`GET /health`), the OpenAPI document and
the Swagger UI; the rest of its contract answers 501 until built."""
