"""GraphQL documents shared by the tests."""

SESSION_FIELDS = """
fragment SessionFields on Session {
  id orgId createdAt updatedAt name status expirationSeconds expiresAt
  assistantId phoneNumberId messageCount
  assistant {
    name firstMessage firstMessageMode maxDurationSeconds backgroundSound
    voicemailMessage endCallMessage endCallPhrases clientMessages serverMessages metadata
    model { provider name config } voice { provider name config }
    transcriber { provider name config } config
  }
  customer {
    number numberE164CheckEnabled extension sipUri name email externalId assistantOverrides
  }
  phoneNumber {
    twilioPhoneNumber twilioAccountSid twilioAuthTokenSet twilioApiKeySet twilioApiSecretSet
    name assistantId squadId workflowId smsEnabled hooks
    server { url timeoutSeconds headersSet backoffPlan { type maxRetries baseDelaySeconds } }
    fallbackDestination {
      __typename
      ... on NumberTransferDestination {
        number numberE164CheckEnabled extension callerId message description
      }
      ... on SipTransferDestination { sipUri message description sipHeaders }
    }
  }
}
"""

MESSAGE_FIELDS = """
fragment MessageFields on Message {
  __typename id sessionId seq role content createdAt metadata
  ... on SystemMessage { message time secondsFromStart }
  ... on UserMessage { message time endTime secondsFromStart duration }
  ... on AssistantMessage { refusal name toolCalls { id type function { name arguments } } }
  ... on ToolMessage { toolCallId name }
  ... on DeveloperMessage { name }
}
"""

CREATE_SESSION = (
    """
mutation Create($input: CreateSessionInput!) {
  createSession(input: $input) { ...SessionFields }
}
"""
    + SESSION_FIELDS
)

GET_SESSION = (
    """
query Get($id: ID!) { session(id: $id) { ...SessionFields } }
"""
    + SESSION_FIELDS
)

CREATE_SESSION_ID = """
mutation Create($input: CreateSessionInput!) { createSession(input: $input) { id } }
"""

UPDATE_SESSION = """
mutation Update($id: ID!, $input: UpdateSessionInput!) {
  updateSession(id: $id, input: $input) {
    id name status expirationSeconds expiresAt createdAt updatedAt
  }
}
"""

DELETE_SESSION = """
mutation Delete($id: ID!) { deleteSession(id: $id) { id name messageCount } }
"""

ADD_MESSAGES = (
    """
mutation Add($sessionId: ID!, $messages: [MessageInput!]!, $key: String) {
  addMessages(sessionId: $sessionId, messages: $messages, idempotencyKey: $key) {
    ...MessageFields
  }
}
"""
    + MESSAGE_FIELDS
)

TRANSCRIPT = """
query Transcript($id: ID!, $first: Int, $after: String, $last: Int, $before: String) {
  session(id: $id) {
    messageCount
    messages(first: $first, after: $after, last: $last, before: $before) {
      totalCount
      edges { cursor node { seq role content } }
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    }
  }
}
"""

LIST_SESSIONS = """
query List(
  $first: Int, $after: String, $last: Int, $before: String,
  $filter: SessionFilter, $orderBy: SessionOrder
) {
  sessions(
    first: $first, after: $after, last: $last, before: $before,
    filter: $filter, orderBy: $orderBy
  ) {
    totalCount
    edges { cursor node { id name status createdAt updatedAt } }
    nodes { id }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""

CREATE_ACCESS_TOKEN = """
mutation Mint($input: AccessTokenInput!) {
  createAccessToken(input: $input) { token expiresAt readOnly sessionIds }
}
"""
