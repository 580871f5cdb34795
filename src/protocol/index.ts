export * from './codes.js';
export * from './client-messages.js';
export * from './server-messages.js';
export { buildServerMessage, encodeServerMessage, errorMessage, snapshotMessage } from './build.js';
export { exceedsJsonTokens, parseClientMessage, type ParseResult, type ProtocolError, type FrameInput } from './parse.js';
export { protocolJsonSchema, protocolJsonSchemaText } from './json-schema.js';
