/**
 * @since 0.1.0
 */
export * as ConnectionPool from "./ConnectionPool.js"
export * as Connector from "./Connector.js"
export * as LibsqlConnector from "./LibsqlConnector.js"
export * as PoolConfig from "./PoolConfig.js"
export * as PoolError from "./PoolError.js"
export * as PoolStats from "./PoolStats.js"
export * as RetryPolicy from "./RetryPolicy.js"
export * as SqliteCode from "./SqliteCode.js"
export * as SqlitePool from "./SqlitePool.js"
