"""A request's image through the model: the one pipeline every prediction route runs, decoding within the pixel budget,
micro-batching."""
