//! Seize, freeze, inject, parasite, cure (being written).
