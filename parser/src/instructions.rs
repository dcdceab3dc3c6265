//! Second parsing stage: [`Node`]s to typed instructions grouped in stages.


