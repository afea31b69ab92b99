"""Data pipelines for the papers' four benchmark families (see the submodules)."""
