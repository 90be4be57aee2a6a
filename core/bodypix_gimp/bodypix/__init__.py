"""The faithful body-pix 2.x port; one file per file of tfjs-models ``body-pix/src``.

``model`` (the network and its outputs), ``resize`` (body-pix's resize and padding),
``decode`` (segmentation and part maps at full resolution), ``poses`` (multi-person pose
decoding), ``instances`` (people from poses, as ``segmentMultiPerson``).
"""
