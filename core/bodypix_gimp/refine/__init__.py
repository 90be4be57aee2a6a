"""Optional stages after BodyPix: edge refinement and finger recovery."""
