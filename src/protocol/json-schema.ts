import { z } from 'zod';
import { ClientMessageSchema } from './client-messages.js';
import { ServerMessageSchema } from './server-messages.js';

/**
 * The whole wire protocol as one JSON Schema document (draft 2020-12), generated from the
 * zod schemas so the document can never drift from what the server accepts and sends.
 * Client messages are described as a client writes them (defaults optional).
 */
export function protocolJsonSchema(): Record<string, unknown> {
  const client = z.toJSONSchema(ClientMessageSchema, { io: 'input', target: 'draft-2020-12' });
  const server = z.toJSONSchema(ServerMessageSchema, { io: 'output', target: 'draft-2020-12' });
  delete client.$schema;
  delete server.$schema;
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    title: 'livegen wire protocol v2 (FastVideo streaming contract)',
    description:
      'Generated from src/protocol by `npm run schema`; do not edit. The rules are in docs/protocol.md.',
    $defs: { ClientMessage: client, ServerMessage: server },
    oneOf: [{ $ref: '#/$defs/ClientMessage' }, { $ref: '#/$defs/ServerMessage' }],
  };
}

export function protocolJsonSchemaText(): string {
  return `${JSON.stringify(protocolJsonSchema(), null, 2)}\n`;
}
