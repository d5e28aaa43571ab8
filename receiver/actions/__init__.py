"""The actions a playbook can run: small typed functions on a registry built per app."""
