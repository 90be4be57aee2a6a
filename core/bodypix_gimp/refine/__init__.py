"""Stages that fix BodyPix's two visible flaws: sloppy edges (``edges``) and lost fingers (``fingers``).

Edge methods are registered by name in ``edges.METHODS``; ``settings.REFINE_METHODS`` lists the
same names so a typo is caught when Settings are built, before any model runs.
"""
