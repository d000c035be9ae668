import { PageHeader } from "../components/common";

export default function Users() {
  return <PageHeader title="Users (not built yet)" />;
}
