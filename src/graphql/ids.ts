import { errors } from "../shared/errors.js";

/** Largest image id (PostgreSQL `integer`). */
export const MAX_ID = 2_147_483_647;

/** Ids are decimal digits only ("1e3", "0x10", " 7" are not ids), from 1 to {@link MAX_ID}; else undefined. */
export function idOf(id: string | number): number | undefined {
  const text = String(id);
  const n = /^[1-9][0-9]{0,9}$/.test(text) ? Number(text) : Number.NaN;
  return n >= 1 && n <= MAX_ID ? n : undefined;
}

/** Why `id` is refused as `field`. */
export const idRefusal = (id: string | number, field: string) =>
  `${field} must be a positive integer id from 1 to ${MAX_ID}, in decimal digits; got '${String(id).slice(0, 40)}'.`;

/**
 * An API id (GraphQL `ID`) as an image id.
 * @throws DomainError BAD_USER_INPUT when it is not a decimal id from 1 to {@link MAX_ID}.
 */
export function parseId(id: string | number, field: string): number {
  const n = idOf(id);
  if (n === undefined) throw errors.badInput(idRefusal(id, field));
  return n;
}
