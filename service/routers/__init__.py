"""One API router per resource; :func:`service.app.create_app` mounts them all."""
