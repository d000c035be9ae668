export interface User {
  id: string;
  username: string;
  name?: string;
  email?: string;
  enabled: boolean;
  state: "ACTIVE" | "CHANGE_PASSWORD";
  roles?: string[];
  createdAt?: string;
  updatedAt?: string;
}

export interface Statement {
  effect: "allow" | "deny";
  actions: string[];
  resources: string[];
}
export interface Policy {
  statements: Statement[];
}
export interface Role {
  id: string;
  name: string;
  description?: string;
  policy: Policy;
  builtin: boolean;
  userCount?: number;
}

export interface Workspace {
  id: string;
  name: string;
  description?: string;
  createdAt?: string;
}
export interface Member {
  workspaceId: string;
  userId: string;
  username: string;
  role: "OWNER" | "MEMBER";
  createdAt?: string;
}
export interface Environment {
  id: string;
  workspaceId: string;
  name: string;
  description?: string;
  [k: string]: unknown;
}

export interface Capacity {
  period: "minute" | "hour" | "day" | "week" | "month" | "lifetime";
  requests?: number | null;
  tokens?: number | null;
  cost?: number | null;
  enabled?: boolean;
  dimension?: "source-ip" | null;
}

export interface ProviderField {
  name: string;
  type: string;
  required: boolean;
  secret: boolean;
  description: string;
}
export interface Provider {
  id: string;
  name: string;
  defaultBaseUrl: string | null;
  configFields: ProviderField[];
  defaultModels: string[];
}

/** USD per million tokens; validTo: the next price's validFrom */
export interface Price {
  id: string;
  provider: string;
  model: string;
  currency: string;
  input: number;
  output: number;
  cachedInput: number | null;
  validFrom: string;
  validTo: string | null;
  createdAt: string;
  updatedAt: string;
}

export type BatchStatus = "QUEUED" | "RUNNING" | "CANCELLING" | "CANCELLED" | "COMPLETED" | "FAILED";
export type BatchItemStatus = "PENDING" | "RUNNING" | "SUCCEEDED" | "FAILED" | "CANCELLED";

/** A completion batch (GET .../completion-batch/{id}) */
export interface Batch {
  id: string;
  apiKeyId: string;
  mode: "ASYNC" | "SYNC" | "CALLBACK";
  status: BatchStatus;
  pool: string | null;
  callbackUrl: string | null;
  counts: { total: number; pending: number; running: number; succeeded: number; failed: number; cancelled: number };
  error: { code: string; message: string } | null;
  createdAt: string;
  startedAt: string | null;
  completedAt: string | null;
  cancelledAt: string | null;
}

/** An item's result (GET .../completion-batch/{id}/items: without its response) */
export interface BatchItem {
  index: number;
  customId: string | null;
  resource: string;
  status: BatchItemStatus;
  statusCode: number | null;
  error: { code?: string; message?: string; type?: string } | null;
  requestId: string | null;
  tries: number;
  startedAt: string | null;
  finishedAt: string | null;
}

export interface Connection {
  id: string;
  name: string;
  description?: string;
  provider: string;
  config: Record<string, string>;
  allowedModels?: string[];
  capacity?: Capacity[];
  discoveredCapacity?: unknown;
  credentialsStatus?: unknown;
  [k: string]: unknown;
}

export interface ModelRef {
  provider: string;
  model: string;
  connectionId: string;
}
export interface Resource {
  id: string;
  name: string;
  description?: string;
  model: ModelRef;
  routing?: unknown;
  fallbackModels?: ModelRef[];
  secondaryModels?: ModelRef[];
  useFallback?: boolean;
  enforceCapacity?: boolean;
  capacity?: Capacity[];
  [k: string]: unknown;
}

export interface ApiKey {
  id: string;
  name: string;
  description?: string;
  enabled: boolean;
  resources: string[];
  labels?: Record<string, string>;
  enforceCapacity?: boolean;
  capacity?: Capacity[];
  expiresAt?: string | null;
  lastUsedAt?: string | null;
  maskedKey?: string;
  key?: string;
  previousKeyExpiresAt?: string | null;
  [k: string]: unknown;
}

export interface DataPlane {
  [k: string]: unknown;
}
