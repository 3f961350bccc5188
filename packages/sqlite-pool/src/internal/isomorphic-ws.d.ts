// @libsql/hrana-client's declarations import @libsql/isomorphic-ws, whose types its package.json "exports" does not
// expose to NodeNext resolution (TS7016 with skipLibCheck off). On Node it is the `ws` package, so say that.
declare module "@libsql/isomorphic-ws" {
  import WebSocket from "ws"
  export { WebSocket }
}
