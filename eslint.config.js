import effect from "@effect/eslint-plugin"
import js from "@eslint/js"
import tseslint from "typescript-eslint"

export default tseslint.config(
  {
    ignores: [
      "**/node_modules/**",
      "**/dist/**",
      "packages/*/docs/**",
      "bench/results/**",
      ".tmp/**",
      ".release/**",
      ".stryker-tmp/**",
      "reports/**"
    ]
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  ...effect.configs.dprint,
  {
    rules: {
      "@effect/dprint": ["error", {
        config: {
          indentWidth: 2,
          lineWidth: 120,
          semiColons: "asi",
          quoteStyle: "alwaysDouble",
          trailingCommas: "never",
          operatorPosition: "maintain",
          "arrowFunction.useParentheses": "force"
        }
      }],
      "@typescript-eslint/no-explicit-any": "off",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/no-empty-object-type": "off",
      "@typescript-eslint/no-namespace": "off",
      // `import { type A } from "./a.js"` still loads a.js at run time (verbatimModuleSyntax keeps `import {}`):
      // written `import type`, it is erased, as scripts/circular.mjs assumes.
      "@typescript-eslint/no-import-type-side-effects": "error"
    }
  },
  {
    // Effect's rule, for the library: internal modules import the public ones for their types only (a public module
    // is a facade over internal code, never the other way round).
    files: ["packages/sqlite-pool/src/internal/**"],
    rules: {
      "@typescript-eslint/no-restricted-imports": ["error", {
        patterns: [{
          regex: "^(\\.\\./)+[A-Z][A-Za-z]*\\.js$",
          caseSensitive: true,
          allowTypeImports: true,
          message: "an internal module imports a public one for its types only: move the value under internal/"
        }]
      }]
    }
  },
  {
    // A function longer than a screen does more than one thing: split it into named steps.
    files: [
      "packages/simulator/src/**",
      "packages/cli/src/**",
      "packages/sqlite-pool/src/**"
    ],
    rules: {
      "max-lines-per-function": ["error", { max: 80 }]
    }
  },
  {
    // Plain Node scripts (child processes of tests and of the simulator)
    files: ["**/*.mjs"],
    languageOptions: {
      globals: { process: "readonly", setTimeout: "readonly", clearTimeout: "readonly", console: "readonly" }
    }
  }
)
