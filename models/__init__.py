"""What is trained: vector fields, encoders/decoders and the wrappers around them."""
