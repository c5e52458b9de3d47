# frozen_string_literal: true

# BorgStack: the first account of a fresh Chatwoot, its administrator, the administrator's API access token (the one
# n8n uses), an API channel inbox and the account webhook to n8n - read, planned, then applied only where it differs.
#
# Run by the chatwoot role inside the web container:
#   docker exec -i <web> bundle exec rails runner /borgstack/setup.rb  < settings.json
# The settings come on stdin (never on the command line): account_name, account_id, admin_name, admin_email,
# admin_password, api_token, inbox_name, inbox_id, extra_inboxes, teams, webhook_url, webhook_events, check.
# With "check": true nothing is written. The last line printed is
#   BORGSTACK_RESULT {"changed":…,"actions":[…],"account_id":…,"inbox_id":…}   or   BORGSTACK_RESULT {"error":"…"}
# and it never holds the password or the token.
require 'json'

class BorgstackChatwootSetup
  class Refused < StandardError; end

  def initialize(settings)
    @s = settings
    @check = settings['check'] == true
    @actions = []
  end

  def run
    account = ensure_account
    user = ensure_admin(account)
    ensure_membership(account, user)
    ensure_token(user)
    inbox = ensure_inbox(account)
    extra = ensure_extra_inboxes(account)
    ensure_teams(account)
    ensure_webhook(account)
    finish_onboarding
    { changed: !@actions.empty?, actions: @actions, account_id: account&.id || @s['account_id'],
      inbox_id: inbox&.id || @s['inbox_id'], extra_inbox_ids: extra }
  end

  private

  def act(what)
    @actions << what
    yield unless @check
  end

  # The account: the one of id account_id; on a fresh install (no account at all) AccountBuilder creates it with
  # the administrator, as the onboarding page would.
  def ensure_account
    account = Account.find_by(id: @s['account_id'])
    if account.nil?
      existing = Account.order(:id).pluck(:id)
      unless existing.empty?
        raise Refused, "no Chatwoot account has id #{@s['account_id']} (chatwoot_account_id); accounts here: " \
                       "#{existing.join(', ')}. Set chatwoot_account_id to the account n8n must use."
      end
      act('create the account and its administrator') do
        user = User.find_by(email: @s['admin_email'])
        _user, account = AccountBuilder.new(account_name: @s['account_name'], user_full_name: @s['admin_name'],
                                            email: @s['admin_email'], user_password: @s['admin_password'],
                                            user: user, confirmed: true, super_admin: true).perform
        if account.id != @s['account_id']
          raise Refused, "the new account got id #{account.id}, not #{@s['account_id']} (chatwoot_account_id): " \
                         'the account sequence was used before; set chatwoot_account_id to it'
        end
      end
      return account
    end
    act("rename the account to #{@s['account_name']}") { account.update!(name: @s['account_name']) } if account.name != @s['account_name']
    account
  end

  # The administrator: confirmed, super admin. Its password is set when the play creates it, never reset later.
  def ensure_admin(account)
    user = User.find_by(email: @s['admin_email'])
    return nil if user.nil? && account.nil?

    if user.nil?
      act('create the administrator') do
        user = User.new(email: @s['admin_email'], name: @s['admin_name'], password: @s['admin_password'],
                        password_confirmation: @s['admin_password'])
        user.type = 'SuperAdmin'
        user.skip_confirmation!
        user.save!
      end
      return user
    end
    act('confirm the administrator') { user.confirm } unless user.confirmed?
    act('make the administrator a super admin') { user.update!(type: 'SuperAdmin') } unless user.type == 'SuperAdmin'
    user
  end

  def ensure_membership(account, user)
    return if account.nil? || user.nil?

    member = AccountUser.find_by(account_id: account.id, user_id: user.id)
    if member.nil?
      act('add the administrator to the account') do
        AccountUser.create!(account_id: account.id, user_id: user.id, role: AccountUser.roles['administrator'])
      end
    elsif member.role != 'administrator'
      act('make the administrator an administrator of the account') { member.update!(role: :administrator) }
    end
  end

  # The administrator's access token (header api_access_token) is the derived chatwoot_api_token.
  def ensure_token(user)
    return if user.nil?

    token = AccessToken.find_by(owner: user)
    if token.nil?
      act('create the API access token') { AccessToken.create!(owner: user, token: @s['api_token']) }
    elsif token.token != @s['api_token']
      act('set the API access token') { token.update!(token: @s['api_token']) }
    end
  end

  # The API channel inbox the WhatsApp workflows write to: inbox_id, named inbox_name.
  def ensure_inbox(account)
    return nil if account.nil?

    inbox = account.inboxes.find_by(id: @s['inbox_id'])
    if inbox
      unless inbox.channel_type == 'Channel::Api'
        raise Refused, "inbox #{inbox.id} (chatwoot_inbox_id) is a #{inbox.channel_type} inbox, not an API channel"
      end
      act("rename inbox #{inbox.id} to #{@s['inbox_name']}") { inbox.update!(name: @s['inbox_name']) } if inbox.name != @s['inbox_name']
      return inbox
    end
    others = account.inboxes.order(:id).pluck(:id)
    unless others.empty?
      raise Refused, "account #{account.id} has no inbox #{@s['inbox_id']} (chatwoot_inbox_id); its inboxes: " \
                     "#{others.join(', ')}. Set chatwoot_inbox_id to the API inbox n8n must use."
    end
    act("create the API inbox #{@s['inbox_name']}") do
      channel = Channel::Api.create!(account: account)
      inbox = Inbox.create!(account: account, name: @s['inbox_name'], channel: channel)
      if inbox.id != @s['inbox_id']
        raise Refused, "the new inbox got id #{inbox.id}, not #{@s['inbox_id']} (chatwoot_inbox_id)"
      end
    end
    inbox
  end

  # The API inboxes of the other WhatsApp numbers (extra_inboxes: names), found by name, created when missing. n8n
  # finds their ids by name too (GET /inboxes). An inbox of that name that is not an API channel is refused.
  def ensure_extra_inboxes(account)
    return {} if account.nil?

    Array(@s['extra_inboxes']).to_h do |name|
      inbox = account.inboxes.find_by(name: name)
      if inbox && inbox.channel_type != 'Channel::Api'
        raise Refused, "the inbox named #{name} (borgstack_customer_service.numbers) is a #{inbox.channel_type} " \
                       'inbox, not an API channel: rename it in Chatwoot or give the number another inbox name'
      end
      act("create the API inbox #{name}") do
        inbox = Inbox.create!(account: account, name: name, channel: Channel::Api.create!(account: account))
      end if inbox.nil?
      [name, inbox&.id]
    end
  end

  # The teams the numbers' conversations are given to (teams: names; Chatwoot keeps team names in lower case).
  def ensure_teams(account)
    return if account.nil?

    Array(@s['teams']).each do |name|
      next if account.teams.where('LOWER(name) = ?', name.downcase).exists?

      act("create the team #{name}") { Team.create!(account: account, name: name) }
    end
  end

  # The account webhook to n8n (Webhook model, account_type), with exactly the events the workflows handle.
  def ensure_webhook(account)
    return if account.nil? || @s['webhook_url'].to_s.empty?

    hook = Webhook.find_by(account_id: account.id, url: @s['webhook_url'])
    events = @s['webhook_events']
    if hook.nil?
      act('create the webhook to n8n') do
        Webhook.create!(account_id: account.id, url: @s['webhook_url'], subscriptions: events)
      end
    elsif hook.subscriptions.to_a.sort != events.sort
      act('set the webhook events') { hook.update!(subscriptions: events) }
    end
  end

  # Onboarding (the page that creates the first account) is set by the seeds of a fresh production database.
  def finish_onboarding
    key = Redis::Alfred::CHATWOOT_INSTALLATION_ONBOARDING
    act('close the onboarding page') { Redis::Alfred.delete(key) } if Redis::Alfred.get(key).present?
  end
end

begin
  settings = JSON.parse($stdin.read)
  result = if settings['check']
             BorgstackChatwootSetup.new(settings).run
           else
             ActiveRecord::Base.transaction { BorgstackChatwootSetup.new(settings).run }
           end
  puts "BORGSTACK_RESULT #{result.to_json}"
rescue BorgstackChatwootSetup::Refused, ActiveRecord::RecordInvalid, JSON::ParserError => e
  puts "BORGSTACK_RESULT #{{ error: e.message }.to_json}"
  exit 1
end
