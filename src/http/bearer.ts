import { SluiceError } from '../errors.ts';

const BEARER = /^Bearer +([\x21-\x7e]+) *$/i;

/**
 * The token of an `Authorization: Bearer <token>` header; throws 401 when the header is missing or
 * is not a bearer token. Messages never echo what was sent: it may be a secret.
 */
export function bearerToken(headers: Headers): string {
  const value = headers.get('Authorization');
  if (value === null) throw new SluiceError('unauthorized', 'missing Authorization: Bearer <token>');
  const token = BEARER.exec(value)?.[1];
  if (token === undefined) throw new SluiceError('unauthorized', 'Authorization must be Bearer <token>');
  return token;
}
