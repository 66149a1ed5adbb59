//! Model store: the model and image folders, name confinement, listing.
