# frozen_string_literal: true

# BorgStack: attachments live in SeaweedFS, reachable only on the stack's internal network. Rails' default sends a
# browser a redirect to a signed URL at the storage endpoint, which a browser cannot reach; with proxy routes Chatwoot
# streams them itself, through Caddy, at its own public address.
Rails.application.config.active_storage.resolve_model_to_route = :rails_storage_proxy
