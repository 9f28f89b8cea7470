"""Whether a request is let in, and what it may cost: body limits and deadlines, API keys, upload places, the pixel
budget."""
