"""Route groups, each built by a function that receives what its routes need."""
